"""What a request asks for besides drawing: list, create (and its name), show, find a pose,
follow up on the last turn, edit it ("make her hair shorter") or undo that edit."""

from __future__ import annotations

import re

CAST = r"(characters|chars|cast|roster|ocs|library|people|girls)"
LIST_PATTERNS = (
    r"\bwho (do|have|can|is|are|did|else)\b",
    r"\bwho (in|there|available)\b",  # "who's in": the norm drops a 's (tokens.normal_word)
    rf"\bwho\b.*\b{CAST}\b",
    rf"\b(list|show|see|display|view|what are|tell me)\b.*\b{CAST}\b",
    rf"\b(what|which) {CAST}\b",
    rf"\bhow many {CAST}\b",
    rf"\b{CAST} (do |did )?(i|we) (have|got|made)\b",
)
CREATURE = r"(character|oc|girl|boy|person|heroine|hero|guy|woman|man)"
CREATE_PATTERNS = (
    rf"\bnew {CREATURE}\b",
    r"\b(create|make|design|invent|add|build) (me )?(a |an )?(new |original )?(character|oc)\b",
)
SHOW_PATTERNS = (
    r"\b(show|open|see|display|view)\b.*\b(results|outputs?|last|latest|recent|previous|made)\b",
    r"\bwhat (did|have|has) (you|we|it|i) (just |already |last )?"
    r"(make|made|draw|drawn|done|generate|generated|create|created)\b",
)
FIND_POSE_PATTERNS = (
    r"\b(find|search|look ?up|lookup|which|what|list|show|any|suggest)\b.*\bposes?\b",
)
FOLLOW_UP_PATTERNS = (
    r"\b(more|again|another|same|redo|repeat|similar|re-?do|re-?roll|reroll)\b",
    r"^(and |ok |okay |cool |great |nice )?(now|then|next)\b",
    r"\b(what|how) about\b",
    r"\b(too|also|as well|instead|this time)\b",
    r"\blike (that|before|the last|those)\b",
    r"\b(that|this) one\b",
    r"\bof (that|this|those|these)\b",
    r"^(actually|no|wait|sorry|make it|make that|i mean)\b",
)
PRONOUN_PATTERN = r"\b(her|him|them|both|they|she|he|'em)\b"
UNDO_PATTERN = r"^\W*(undo|revert|go back|take that back|never ?mind|change it back)\b"
EDIT_VERBS = r"(?:make|give|change|turn|set)"
# Deleting is no tool of the chat: a request to delete characters or pictures plans nothing (it
# must never read as a drawing of the characters it names). Its object is the library, its
# pictures or a character, so "remove the hat" stays a change to the picture.
DELETE_VERBS = r"(delete|remove|erase|wipe|destroy|purge)"
DELETE_LINKS = r"(all|every|of|my|the|your|our|these|those|both|and|,)"
DELETE_OBJECTS = (
    r"(all|everyone|everybody|everything|them|characters?|chars|cast|roster|ocs"
    r"|library|collection|images?|pictures?|pics|photos?|results?|gallery)"
)
DELETE_NOTE = (
    "I do not delete anything from the chat. Remove a character with "
    "`anime-chat characters remove NAME`."
)
# Adjectives ending in e, so "larger" reads as "large" and not "larg".
E_ADJECTIVES = {"large", "pale", "cute", "wide", "white", "nice", "close", "loose", "fine",
                "simple", "gentle", "late", "strange", "pure", "blue", "safe", "wise"}  # fmt: skip


def matches(patterns: tuple[str, ...], text: str) -> bool:
    return any(re.search(pattern, text) for pattern in patterns)


def asks_to_delete(text: str, characters: list[str]) -> bool:
    """'delete all characters', 'remove yuki and mei from my library', 'wipe the library'."""
    names = "|".join(re.escape(name.lower()) for name in characters)
    target = f"({DELETE_OBJECTS}|{names})" if names else DELETE_OBJECTS
    link = f"({DELETE_LINKS}|{names})" if names else DELETE_LINKS
    return re.search(rf"\b{DELETE_VERBS}(\s+{link})*\s+{target}\b", text) is not None


def _comparative_base(word: str) -> str | None:
    """'shorter' → 'short', 'bigger' → 'big', 'curlier' → 'curly', 'larger' → 'large'."""
    if not word.endswith("er") or len(word) < 5:
        return None
    if word.endswith("ier"):
        return word[:-3] + "y"
    stem = word[:-2]
    if stem + "e" in E_ADJECTIVES:
        return stem + "e"
    if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls":
        return stem[:-1]
    return stem


def edit_term(text: str) -> tuple[str, str] | None:
    """A change to the last picture: 'make her hair shorter' → ('short hair', 'hair')."""
    match = re.match(
        rf"^\W*(?:now |ok |okay |and |then |please |can you |could you )*{EDIT_VERBS} "
        r"(?:her|his|him|their|them|the|it|its|this|that)\s+(.+?)\W*$",
        text,
    )
    if not match:
        return None
    words = [w for w in match[1].split() if w not in ("a", "bit", "little", "lot", "much")]
    for i, word in enumerate(words):
        if word in ("more", "less") and i + 1 < len(words):
            rest = words[:i] + words[i + 2 :]
            adjective = words[i + 1] if word == "more" else f"less {words[i + 1]}"
            return " ".join([adjective, *rest]), " ".join(rest)
        base = _comparative_base(word)
        if base:
            rest = words[:i] + words[i + 1 :]
            return " ".join([base, *rest]), " ".join(rest)
    return None


NAME_PHRASE = re.compile(
    r"(?:,?\s*\b(?:she|he|they)(?:'s| is| are| will be)?\s+)?"
    r"\b(?:named|called|call(?:ed)? (?:her|him|them|it)|name (?:her|him|them|it)(?: as)?|"
    r"(?:her|his|their|whose|the|its) name(?:'s| is| will be| should be)?|name:)"
    r"\s+([A-Za-z][A-Za-z0-9_-]*)",
    re.IGNORECASE,
)
# "new character: NAME, ...", "new oc - NAME: ...", "create oc — NAME — ...": a name set off by a
# colon or a dash and followed by another, or a comma (so "new character: a tall elf" names none).
COLON_NAME = re.compile(
    rf"\b{CREATURE}\s*(?::|\s[-–—]|[–—])\s*([A-Za-z][A-Za-z0-9_'-]*?)\s*(?:[,:;.]|\s?[-–—]\s|$)",
    re.IGNORECASE,
)
# Where a creation ends and a drawing request begins ("..., then draw her waving").
THEN_DRAW = re.compile(
    r"(?:[.;]\s*|,?\s*\b(?:and\s+)?then\b\s*|,?\s*\band\s+(?=(?:draw|show|make|generate|give|"
    r"render|paint|sketch)\b)|,\s*(?=(?:draw|show me|generate|render)\b))",
    re.IGNORECASE,
)
DRAW_START = re.compile(
    r"^\s*(?:please\s+)?(?:draw|show|make|generate|give|render|paint|sketch|do|and|then)\b",
    re.IGNORECASE,
)


def split_creation(text: str) -> tuple[str, str]:
    """The creation part of a request and the drawing request after it (or '')."""
    for match in THEN_DRAW.finditer(text):
        rest = text[match.end() :]
        if rest.strip() and ("then" in match[0].lower() or DRAW_START.match(rest)):
            return text[: match.start()], rest
    return text, ""


def creation_args(text: str) -> dict[str, str | None]:
    colon = COLON_NAME.search(text)
    if colon and not NAME_PHRASE.search(text):
        description = re.sub(r"^\W*", "", text[colon.end() :])
        return {
            "name": colon[colon.lastindex or 1].lower(),
            "description": description.strip(" ,.;") or text.strip(),
        }
    name_match = NAME_PHRASE.search(text)
    name = name_match[1].lower() if name_match else None
    description = text.split(":", 1)[1] if ":" in text and not re.search(r"name:", text) else text
    if name_match:
        description = description.replace(name_match[0], ",")
    description = re.sub(
        rf"^.*?\b(new {CREATURE}|(character|oc))\b", "", description, count=1, flags=re.IGNORECASE
    )
    description = re.sub(r"^\W*(who is|who has|that is|with|of|,|-)?\s*", "", description.strip())
    description = re.sub(r"\s*,(\s*,)+", ",", description)
    description = re.sub(r"\s+([,.])", r"\1", description).strip(" ,.;") or text.strip()
    return {"name": name, "description": description}
