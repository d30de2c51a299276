"""Russian: each module holds MESSAGES (English text -> Russian) for one part of the interface:
dashboard.py (pages, widgets, notices), report.py (the HTML report), stats.py (statistical
readings and interval notes), features.py (demo set, progress, search, model names)."""
