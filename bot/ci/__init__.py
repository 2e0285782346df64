"""CI output made useful to an agent: log excerpts (`logs`) and failure categories (`classify`)."""
