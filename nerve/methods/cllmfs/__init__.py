"""``method=cllmfs``: IF-WRANER's handler over the CLLMFS LoRA (:mod:`.builder`)."""
