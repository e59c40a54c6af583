"""The HTTP layer: parsing requests (`forms`), answering them (`answers`), and one function per
endpoint (`endpoints`)."""
