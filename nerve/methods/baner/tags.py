"""The type-agnostic BIO tags of BANER's span detector (shared by inference and training)."""

TAG_O, TAG_B, TAG_I = 0, 1, 2
NUM_TAGS = 3
