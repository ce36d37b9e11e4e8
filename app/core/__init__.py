"""Library code shared by the gateway, the trainers and the Triton models."""
