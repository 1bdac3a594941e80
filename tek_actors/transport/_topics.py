"""A client's topics (globs such as `config.*`, `proc.output`) as compiled patterns."""

from __future__ import annotations

import fnmatch
import re


def compile_topics(topics: list[str] | None) -> re.Pattern[str] | None:
    """One regex for a list of globs (`config.*`, `proc.output`); None matches everything."""
    if topics is None:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(t)})" for t in topics) or "(?!)")


def topic_prefixes(topics: list[str] | None) -> re.Pattern[str] | None:
    """Which domains (the part before the first dot) the topics reach, as one regex."""
    if topics is None:
        return None
    return re.compile(
        "|".join(f"(?:{fnmatch.translate(t.split('.', 1)[0])})" for t in topics) or "(?!)"
    )
