"""The report stage's parts: gather the records, measure speed and memory, draw, render."""
