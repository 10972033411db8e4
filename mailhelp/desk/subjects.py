"""Does a reply still speak of its ticket? Its subject and the ticket's, word by word. Pure.

A teacher who answers an old help-desk mail to ask something new ("Document camera in
7b dead" as a reply to last month's acknowledgement) keeps the old thread's headers but
writes a new subject. A subject that still carries a ticket tag was left alone by its
writer; one that shares few words with the ticket's subject (reply and forward prefixes,
tags and filler words aside) is about something else.
"""

from __future__ import annotations

import re

from .threads import tag_pattern

# Subjects are short; a longer one is judged by its start (and costs no more than that).
MAX_SUBJECT = 1000
# Below this share of the shorter subject's words in common, the subject is new.
SAME_TOPIC = 0.5

# Reply and forward prefixes in the languages of the desk's mail clients, stacked.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|tr|antw|rif|ref|r|resolved|new)\s*(?:\[\d+\])?\s*:\s*)+",
    re.I)
_WORD = re.compile(r"\w+")
# Words that say nothing about the topic (English, German, French, Spanish).
_FILLER = frozenset((
    "a", "an", "the", "in", "on", "of", "for", "to", "and", "or", "is", "are", "it", "its",
    "my", "our", "your", "with", "at", "from", "by", "not", "no", "please", "help", "again",
    "still", "problem", "issue", "question",
    "der", "die", "das", "ein", "eine", "im", "und", "ist", "mit", "von", "bitte",
    "le", "la", "les", "un", "une", "du", "des", "et", "est", "en", "avec",
    "el", "los", "las", "y", "es", "con", "por"))
_NO_SUBJECT = "(no subject)"


def words(subject: str, subject_tag: str) -> frozenset[str]:
    """The words of a subject that name its topic."""
    subject = tag_pattern(subject_tag).sub(" ", subject[:MAX_SUBJECT])
    subject = _PREFIX.sub("", subject)
    return frozenset(w for w in _WORD.findall(subject.lower()) if w not in _FILLER)


def is_new_subject(message_subject: str, ticket_subject: str, subject_tag: str) -> bool:
    """The message's subject is about something other than the ticket's."""
    if tag_pattern(subject_tag).search(message_subject[:MAX_SUBJECT]):
        return False  # the writer kept the ticket's tag: still that ticket
    if not ticket_subject or ticket_subject == _NO_SUBJECT:
        return False  # nothing to compare with
    new, old = words(message_subject, subject_tag), words(ticket_subject, subject_tag)
    if not new or not old:
        return False  # "Re:" alone, or a subject of filler words: no new topic named
    return len(new & old) / min(len(new), len(old)) < SAME_TOPIC
