"""The web console: plain HTML/CSS/JS served by the gateway itself (no build step, no CDN)."""
