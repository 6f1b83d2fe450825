"""Class ids of every mask, prediction and metric: the one home of these numbers."""

BACKGROUND, LINE, TOWER = 0, 1, 2
IGNORE_INDEX = 255  # void regions and padding: every loss and metric skips them
CLASS_NAMES = {BACKGROUND: "background", LINE: "line", TOWER: "tower", IGNORE_INDEX: "ignore"}
