"""amauta.report: `amauta report`, one Markdown and one HTML page over eval folders and training runs.

It sits above the rooms whose folders it renders (train, evaluate, judge) and imports them; none of
them imports it.
"""
