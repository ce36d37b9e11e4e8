"""CLLMFS: the IF-WRANER trainer plus a contrastive (InfoNCE) loss on a hidden layer."""
