"""SQL analysis: what a migration's statements do, the locks they take, what they risk.

Pure: text in, frozen records out. Imports nothing above the base layer.
"""
