"""Extraction passes over a request's tokens: each claims what it understands as mentions.

Seed, character names (exact, then fuzzy, then unknown words in a name slot), whole-cast
phrases and who they leave out, image references, counts, postures and actions, corrections and
negations. Clauses are cut from the mentions by position (`clauses.py`).
"""

from __future__ import annotations

import re

from assistant.planners import vocabulary as v
from assistant.planners.resolve import match_character
from assistant.planners.tokens import Mention, Tokens, name_forms, number_word, vocabulary_word
from tools.generation.toolbox import MAX_COUNT

NAME_MIN_FUZZY = 3
IMAGE_NOUNS = ("one", "image", "picture", "pic", "result")
CAST_NOUNS = {"characters", "chars", "cast", "roster", "ocs", "library", "people", "girls",
              "boys", "crew", "gang", "lineup", "team", "guys", "them", "'em", "em"}  # fmt: skip


def take_seed(tokens: Tokens) -> None:
    for i, word in enumerate(tokens.words):
        if word == "seed" and tokens.free(i):
            j = i + 1
            while j < len(tokens.words) and tokens.words[j] in ("of", "is", "=", ":", "number"):
                j += 1
            if j < len(tokens.words) and tokens.words[j].lstrip("#").isdigit():
                tokens.claim(i, j + 1, "seed", int(tokens.words[j].lstrip("#")))
                return


def take_image_ref(tokens: Tokens) -> None:
    """'the second one', 'the last image', '#2', 'number 3', 'image 2' → 1-based index (-1 last)."""
    words = tokens.words
    for i, word in enumerate(words):
        if not tokens.free(i):
            continue
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word in v.ORDINALS and (nxt in IMAGE_NOUNS or (i > 0 and words[i - 1] == "the")):
            tokens.claim(i, i + 1 + (nxt in IMAGE_NOUNS), "image", v.ORDINALS[word])
            return
        if re.fullmatch(r"#\d+", word):
            tokens.claim(i, i + 1, "image", int(word[1:]))
            return
        if word in ("number", "no", "image", "picture", "pic") and nxt.isdigit():
            tokens.claim(i, i + 2, "image", int(nxt))
            return


def take_names(tokens: Tokens, characters: list[str]) -> None:
    """Exact names first (also 'rin tohsaka' for rin_tohsaka)."""
    folded = {name.lower(): name for name in characters}
    words = tokens.words
    for i in range(len(words) - 1):
        if tokens.free(i) and tokens.free(i + 1):
            for joiner in ("_", "-", ""):
                joined = words[i] + joiner + words[i + 1]
                if joined in folded:
                    tokens.claim(i, i + 2, "name", folded[joined])
                    break
    for i, word in enumerate(words):
        form = next((f for f in name_forms(word) if f in folded), None)
        if tokens.free(i) and form:
            tokens.claim(i, i + 1, "name", folded[form])


def take_groups(tokens: Tokens) -> None:
    """'every character', 'all five of my characters', 'the whole cast', and who is left out."""
    for start, phrase in tokens.take_phrases(v.ALL_PHRASES):
        tokens.mentions.append(Mention(start, "all", None, start + len(phrase.split())))
    words = tokens.words
    for i, word in enumerate(words):
        if not tokens.free(i) or word not in ("all", "the", "every"):
            continue
        j = i + 1
        if word == "the" and tokens.free(j) and words[j] in ("whole", "entire", "full"):
            j += 1
        elif word == "the" and not (tokens.free(j) and number_word(words, j)):
            continue
        if tokens.free(j) and (number := number_word(words, j)) is not None:
            j += number[1]
        while tokens.free(j) and words[j] in ("of", "my", "the", "our"):
            j += 1
        if j > i + 1 and tokens.free(j) and words[j] in CAST_NOUNS:
            tokens.claim(i, j + 1)
            tokens.mentions.append(Mention(i, "all", None, j + 1))
    for group in tokens.found("all"):
        _take_excepted(tokens, group.stop)


def _take_excepted(tokens: Tokens, i: int) -> None:
    """Names after 'except', 'but', 'apart from' ... following a whole-cast phrase."""
    words = tokens.words
    for phrase in sorted(v.EXCEPT_PHRASES, key=lambda p: -len(p.split())):
        parts = phrase.split()
        if words[i : i + len(parts)] == parts:
            break
    else:
        return
    j = i + len(parts)
    names = [m for m in tokens.mentions if m.kind == "name"]
    taken = False
    while j < len(words):
        at = next((m for m in names if m.start == j), None)
        if at is not None:
            tokens.mentions.remove(at)
            tokens.claim(at.start, at.stop, "except", at.value)
            taken, j = True, at.stop
        elif taken and words[j] in (",", "and", "or", "&", "nor"):
            j += 1
        else:
            break
    if taken:
        tokens.claim(i, i + len(parts))
        # Joiners inside the list are not clause breaks ("all but mei and aoi, jumping").
        for k in range(i, j):
            if words[k] in ("and", "or", "&", "nor", ","):
                tokens.words[k] = "or"


def take_counts(tokens: Tokens) -> None:
    """Every count: digits, number words, '3x', 'x 3', '×3', 'a pair', 'half a dozen'."""
    words = tokens.words
    for start, phrase in tokens.take_phrases(v.QUANTITY_PHRASES):
        stop = _take_count_nouns(tokens, start + len(phrase.split()))
        tokens.mentions.append(Mention(start, "count", (v.QUANTITY_PHRASES[phrase], True), stop))
    for i, word in enumerate(words):
        if not tokens.free(i):
            continue
        match = re.fullmatch(r"x?(\d+)x?", word)
        if match:
            value, length = int(match[1]), 1
        elif word == "x" and tokens.free(i + 1) and words[i + 1].isdigit():
            value, length = int(words[i + 1]), 2
        elif word == "x" and i > 0 and words[i - 1].isdigit() and not tokens.free(i - 1):
            tokens.claim(i, i + 1)
            continue
        elif (number := number_word(words, i)) is not None:
            value, length = number
        else:
            continue
        noun = i + length < len(words) and words[i + length] in v.COUNT_NOUNS
        if word == "one" and not noun:
            continue
        if 1 <= value <= MAX_COUNT:
            tokens.claim(i, i + length)
            stop = _take_count_nouns(tokens, i + length)
            tokens.mentions.append(Mention(i, "count", (value, noun), stop))
        elif (noun and words[i + length] not in ("of", "more")) or (match and "x" in word):
            # Said as a count ("1000 each", "0 times", "x500"), out of range: never a scene word
            # nor a silent count of one.
            tokens.claim(i, i + length, "bad_count", value)


def _take_count_nouns(tokens: Tokens, i: int) -> int:
    taken = 0
    while tokens.free(i) and tokens.words[i] in v.COUNT_NOUNS and taken < 3:
        tokens.used[i] = True
        i, taken = i + 1, taken + 1
    return i


def take_pose(tokens: Tokens) -> None:
    for start, phrase in tokens.take_phrases(v.RANDOM_POSE_PHRASES):
        tokens.claim(start, start + len(phrase.split()), "random")
    for start, phrase in tokens.take_phrases(v.ACTION_PHRASES):
        tokens.claim(start, start + len(phrase.split()), "action", v.ACTION_PHRASES[phrase])
    for start, phrase in tokens.take_phrases(v.POSTURE_PHRASES):
        tokens.claim(start, start + len(phrase.split()), "posture", v.POSTURE_PHRASES[phrase])
    for i, word in enumerate(tokens.words):
        if not tokens.free(i):
            continue
        if word in v.POSTURE_WORDS:
            tokens.claim(i, i + 1, "posture", v.POSTURE_WORDS[word])
        elif word in v.ACTION_WORDS:
            tokens.claim(i, i + 1, "action", v.ACTION_WORDS[word])


def take_markers(tokens: Tokens) -> None:
    """Clause breaks, corrections ('no wait', 'actually'), negations ('not', 'without')."""
    for start, phrase in tokens.take_phrases(v.CORRECTION_PHRASES):
        tokens.mentions.append(Mention(start, "correct", None, start + len(phrase.split())))
    for start, phrase in tokens.take_phrases(v.CLAUSE_BREAK_PHRASES):
        tokens.mentions.append(Mention(start, "break", None, start + len(phrase.split())))
    for start, phrase in tokens.take_phrases(v.NEGATORS):
        stop = start + len(phrase.split())
        if phrase == "no" and not _negates(tokens, stop):
            tokens.mentions.append(Mention(start, "correct", None, start + 1))
            continue
        while tokens.free(stop) and tokens.words[stop] in v.NEGATED_VERBS:
            tokens.used[stop] = True
            stop += 1
        tokens.mentions.append(Mention(start, "negate", None, start + stop - start))
    relations = [f"{r} {p}" for r in v.RELATIONS for p in v.OBJECT_PRONOUNS]
    for start, phrase in tokens.take_phrases(tuple(relations)):
        tokens.claim(start, start + len(phrase.split()), "relation")
    for i, word in enumerate(tokens.words):
        if word in v.CLAUSE_BREAKS and not any(m.start <= i < m.stop for m in tokens.mentions):
            tokens.used[i] = True
            tokens.mentions.append(Mention(i, "break", None, i + 1))


def _negates(tokens: Tokens, i: int) -> bool:
    """'no hat' negates; 'no, sitting' and 'no wait' correct."""
    return i < len(tokens.words) and tokens.words[i] not in v.CLAUSE_BREAKS


# A word after these is a thing, not a person ("in the rain" is not a typo for rin).
NOT_BEFORE_NAME = {
    "the", "a", "an", "in", "at", "on", "under", "into", "her", "his", "their", "my", "its",
    "some", "wearing", "holding", "by", "near", "during",
}  # fmt: skip
NOT_NAME_SUFFIXES = ("ing", "ly")


def take_fuzzy_names(tokens: Tokens, characters: list[str], notes: list[str]) -> None:
    for i, word in enumerate(tokens.words):
        if not tokens.free(i) or vocabulary_word(word) or len(word) < NAME_MIN_FUZZY:
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", word) or word.endswith(NOT_NAME_SUFFIXES):
            continue
        if i > 0 and tokens.words[i - 1] in NOT_BEFORE_NAME:
            continue
        match = match_character(name_forms(word)[-1], characters)
        if match.name:
            tokens.claim(i, i + 1, "name", match.name)
            notes.append(f"Taking '{word}' as {match.name}.")


NAME_SLOT_FILLERS = {
    "me", "a", "an", "some", "of", "picture", "pictures", "image", "images", "pic", "pics",
    "please", "the", "us", "my", "our", "character", "oc", "named", "called", "pls",
}  # fmt: skip
LIST_JOINERS = {",", "and", "&"}


def _name_candidate(tokens: Tokens, i: int) -> bool:
    """Could the free word at i be a character's name? Not vocabulary, and not a thing."""
    word = tokens.words[i]
    if not tokens.free(i) or vocabulary_word(word) or word in v.SCENE_PREPOSITIONS:
        return False
    if i > 0 and tokens.words[i - 1] in NOT_BEFORE_NAME:
        return False
    return re.fullmatch(r"[a-z][a-z0-9_-]{1,39}", word) is not None


def _listed_with_a_name(tokens: Tokens) -> set[int]:
    """Candidate words in a list of names joined by 'and' ('yuki and bob', 'bob, rin and mei')."""
    names = tokens.names
    found: set[int] = set()
    i = 0
    while i < len(tokens.words):
        items, joiners, j = [], [], i
        while j < len(tokens.words) and (j in names or _name_candidate(tokens, j)):
            items.append(j)
            if j + 1 < len(tokens.words) and tokens.words[j + 1] in LIST_JOINERS:
                joiners.append(tokens.words[j + 1])
                j += 2
            else:
                break
        named = any(item in names for item in items)
        first = items[0] if items else i
        # "a flower field and aoi": a word after a scene word is part of the scene.
        loose = first > 0 and tokens.free(first - 1) and first not in names
        loose = loose and tokens.words[first - 1] not in NAME_SLOT_FILLERS | v.DRAW_VERBS
        if len(items) > 1 and named and set(joiners) - {","} and not loose:
            found.update(item for item in items if item not in names)
        i = max(j, i) + 1
    return found


# What opens a clause, so a word after it is the clause's subject ("mei sitting and X running").
CLAUSE_OPENERS = {",", ";", "and", "then", "&", "plus"}
POSE_KINDS = ("posture", "action")


def _opens_a_pose_clause(tokens: Tokens, i: int) -> bool:
    """A word that opens the request or a clause and is followed by a posture or an action
    ("tsubasa sitting", "kiyomi, standing") stands in a character's slot, lowercase or not."""
    if i > 0 and tokens.words[i - 1] not in CLAUSE_OPENERS:
        return False
    after = i + 2 if tokens.words[i + 1 : i + 2] == [","] else i + 1
    return any(m.start == after for kind in POSE_KINDS for m in tokens.found(kind))


def take_unknown_names(tokens: Tokens) -> None:
    """Words in a name slot ('draw X', 'of X', 'X and yuki') that match no character."""
    words = tokens.words
    listed = _listed_with_a_name(tokens)
    names = tokens.names
    any_known = any(m.kind == "name" for m in tokens.mentions)
    for i in range(len(words)):
        if not _name_candidate(tokens, i):
            continue
        j = i - 1
        while j >= 0 and words[j] in NAME_SLOT_FILLERS:
            j -= 1
        before = words[j] if j >= 0 else ""
        capitalised = tokens.original[i][:1].isupper()
        slot = before in v.DRAW_VERBS or (j < i - 1 and words[i - 1] == "of")
        beside_name = before == "with" and j > 0 and j - 1 in names
        if (
            i in listed
            or (slot and not any_known)
            or (capitalised and (beside_name or slot or i == 0))
            or _opens_a_pose_clause(tokens, i)
        ):
            tokens.claim(i, i + 1, "unknown", words[i])


def take_pose_word_names(tokens: Tokens) -> None:
    """'draw Stand sitting', 'draw Wave standing': a capitalised pose word in the name slot that a
    pose follows is a name (one no character has), not a second pose."""
    poses = [m for m in tokens.mentions if m.kind in ("posture", "action")]
    starts = {m.start for m in poses}
    for m in poses:
        i = m.start
        slot = i > 0 and tokens.words[i - 1] in v.DRAW_VERBS
        if m.stop == i + 1 and slot and tokens.original[i][:1].isupper() and m.stop in starts:
            tokens.mentions.remove(m)
            tokens.mentions.append(Mention(i, "unknown", tokens.words[i], i + 1))


def take_pronouns(tokens: Tokens, names: list[str]) -> None:
    """'draw her waving', '2 of them', 'him': the characters the pronoun points at."""
    words = tokens.words
    for i, word in enumerate(words):
        if not names or not tokens.free(i) or word not in ("her", "him", "them", "'em", "em"):
            continue
        before = words[i - 1] if i > 0 else ""
        after = words[i + 1] if i + 1 < len(words) else ""
        slot = before in v.DRAW_VERBS or before in ("of", "me", "and")
        ends = not after or after in v.CLAUSE_BREAKS or after in v.POSTURE_WORDS
        if word == "her" and not (slot or ends or after in v.ACTION_WORDS):
            continue
        tokens.used[i] = True
        tokens.mentions.extend(Mention(i, "name", name, i + 1) for name in names)
