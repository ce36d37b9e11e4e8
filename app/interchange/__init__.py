"""Labelled data in and out of a domain in other tools' formats, and Label Studio's ML backend."""
