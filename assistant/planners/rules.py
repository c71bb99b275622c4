"""RulePlanner: the embedded, deterministic planner used when Ollama is not there.

It reads a request in general steps over one token list, each step claiming the tokens it
understands: seed, character names (exact, then fuzzy), count (digits, number words, "a dozen"),
"every character", posture and action words, "random pose"; whatever is left, trimmed of filler,
is the scene prompt ("in the rain", "at the beach"). Intents other than drawing (list, create,
find pose, show results) and follow-ups ("3 more of that") are recognised first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import ValidationError

from assistant.planners import vocabulary as v
from assistant.planners.base import Plan, PlannerContext, PreviousImage
from assistant.planners.resolve import (
    Resolved,
    compose_reply,
    match_character,
    resolve_call,
    unknown_note,
)
from posebank.lexicon import posture_of
from tools.toolbox import MAX_COUNT, validate_args

TOKEN = re.compile(r"#?[A-Za-z0-9][A-Za-z0-9_'’\-]*|[,.;:!?&]")
PUNCTUATION = set(",.;:!?&")
NAME_MIN_FUZZY = 3


@dataclass
class Tokens:
    words: list[str]
    original: list[str]
    used: list[bool]
    names: set[int] = field(default_factory=set)  # positions claimed by character names

    @classmethod
    def of(cls, text: str) -> Tokens:
        original = [t.replace("’", "'") for t in TOKEN.findall(text)]
        words = [_normal_word(t.lower()) for t in original]
        return cls(words, original, [w in PUNCTUATION for w in words])

    def free(self, i: int) -> bool:
        return 0 <= i < len(self.words) and not self.used[i]

    def take_phrases(self, phrases: dict[str, str] | tuple[str, ...]) -> list[tuple[int, str]]:
        """Claim every free occurrence of each phrase, longest first; (start, phrase) found."""
        found = []
        for phrase in sorted(phrases, key=lambda p: -len(p.split())):
            parts = phrase.split()
            for i in range(len(self.words) - len(parts) + 1):
                span = range(i, i + len(parts))
                if all(self.free(j) for j in span) and self.words[i : i + len(parts)] == parts:
                    for j in span:
                        self.used[j] = True
                    found.append((i, phrase))
        return sorted(found)

    def text(self) -> str:
        return " ".join(self.words)


HONORIFIC = re.compile(r"-(chan|kun|san|sama|senpai|sensei|tan|chi)$")


def _normal_word(word: str) -> str:
    """Drop a possessive 's; spell out a mistyped vocabulary word ('sittin', 'standng')."""
    if len(word) > 3:
        word = re.sub(r"'s$", "", word)
    return v.known_spelling(word)


def _name_forms(word: str) -> tuple[str, ...]:
    """The word as typed, then without an honorific ('sakura-chan' is sakura)."""
    bare = HONORIFIC.sub("", word)
    return (word, bare) if bare != word else (word,)


@dataclass
class Request:
    characters: list[str] = field(default_factory=list)
    all_characters: bool = False
    count: int | None = None
    seed: int | None = None
    posture: str | None = None
    actions: list[str] = field(default_factory=list)
    random_pose: bool = False
    prompt: str = ""
    image_ref: int | None = None
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def pose(self) -> str | None:
        words = ([self.posture] if self.posture else []) + self.actions
        return " ".join(words) or None

    @property
    def has_pose_words(self) -> bool:
        return bool(self.posture or self.actions)


def _number_word(words: list[str], i: int) -> tuple[int, int] | None:
    """(value, tokens used) for a number written in words at i ("twenty five", "twenty-five")."""
    parts = words[i].split("-")
    if len(parts) == 2 and parts[0] in v.TENS and parts[1] in v.UNITS:
        return v.TENS[parts[0]] + v.UNITS[parts[1]], 1
    word = words[i]
    if word in v.TENS:
        if i + 1 < len(words) and words[i + 1] in v.UNITS and 0 < v.UNITS[words[i + 1]] < 10:
            return v.TENS[word] + v.UNITS[words[i + 1]], 2
        return v.TENS[word], 1
    if word in v.UNITS:
        return v.UNITS[word], 1
    return None


def _take_seed(tokens: Tokens) -> int | None:
    for i, word in enumerate(tokens.words):
        if word == "seed" and tokens.free(i):
            j = i + 1
            while j < len(tokens.words) and tokens.words[j] in ("of", "is", "=", ":", "number"):
                j += 1
            if j < len(tokens.words) and tokens.words[j].lstrip("#").isdigit():
                for k in range(i, j + 1):
                    tokens.used[k] = True
                return int(tokens.words[j].lstrip("#"))
    return None


def _take_image_ref(tokens: Tokens) -> int | None:
    """'the second one', 'the last image', '#2', 'number 3', 'image 2' → 1-based index (-1 last)."""
    words = tokens.words
    for i, word in enumerate(words):
        if not tokens.free(i):
            continue
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word in v.ORDINALS and (nxt in ("one", "image", "picture", "pic", "result") or
                                   (i > 0 and words[i - 1] == "the")):  # fmt: skip
            tokens.used[i] = True
            if nxt in ("one", "image", "picture", "pic", "result"):
                tokens.used[i + 1] = True
            return v.ORDINALS[word]
        if re.fullmatch(r"#\d+", word):
            tokens.used[i] = True
            return int(word[1:])
        if word in ("number", "no", "image", "picture", "pic") and nxt.isdigit():
            tokens.used[i] = tokens.used[i + 1] = True
            return int(nxt)
    return None


def _take_count(tokens: Tokens) -> int | None:
    words = tokens.words
    for start, phrase in tokens.take_phrases(v.QUANTITY_PHRASES):
        _take_count_nouns(tokens, start + len(phrase.split()))
        return v.QUANTITY_PHRASES[phrase]
    candidates: list[tuple[bool, int, int, int]] = []  # (noun follows, start, length, value)
    for i, word in enumerate(words):
        if not tokens.free(i):
            continue
        match = re.fullmatch(r"x?(\d+)x?", word)
        if match:
            value, length = int(match[1]), 1
        elif word in ("x", "×") and tokens.free(i + 1) and words[i + 1].isdigit():
            value, length = int(words[i + 1]), 2
        elif (number := _number_word(words, i)) is not None:
            value, length = number
        else:
            continue
        noun = i + length < len(words) and words[i + length] in v.COUNT_NOUNS
        if word == "one" and not noun:
            continue
        if 1 <= value <= MAX_COUNT:
            candidates.append((noun, i, length, value))
    if not candidates:
        return None
    best = next((c for c in candidates if c[0]), candidates[0])
    _, start, length, value = best
    for j in range(start, start + length):
        tokens.used[j] = True
    _take_count_nouns(tokens, start + length)
    return value


def _take_count_nouns(tokens: Tokens, i: int) -> None:
    taken = 0
    while tokens.free(i) and tokens.words[i] in v.COUNT_NOUNS and taken < 3:
        tokens.used[i] = True
        i, taken = i + 1, taken + 1


def _vocabulary_word(word: str) -> bool:
    return (
        word in v.FILLERS
        or word in v.POSTURE_WORDS
        or word in v.ACTION_WORDS
        or word in v.UNITS
        or word in v.TENS
        or word in v.ORDINALS
        or word in v.COUNT_NOUNS
    )


def _take_names(tokens: Tokens, characters: list[str], request: Request) -> None:
    """Exact names first (also 'rin tohsaka' for rin_tohsaka), then fuzzy, reported."""
    folded = {name.lower(): name for name in characters}
    words = tokens.words
    for i in range(len(words)):
        if tokens.free(i) and tokens.free(i + 1):
            for joiner in ("_", "-", ""):
                joined = words[i] + joiner + words[i + 1]
                if joined in folded:
                    tokens.used[i] = tokens.used[i + 1] = True
                    tokens.names.update((i, i + 1))
                    request.characters.append(folded[joined])
                    break
    for i, word in enumerate(words):
        form = next((f for f in _name_forms(word) if f in folded), None)
        if tokens.free(i) and form:
            tokens.used[i] = True
            tokens.names.add(i)
            request.characters.append(folded[form])


# A word after these is a thing, not a person ("in the rain" is not a typo for rin).
NOT_BEFORE_NAME = {
    "the", "a", "an", "in", "at", "on", "under", "into", "her", "his", "their", "my", "its",
    "some", "wearing", "holding", "by", "near", "during",
}  # fmt: skip
NOT_NAME_SUFFIXES = ("ing", "ly")


def _take_fuzzy_names(tokens: Tokens, characters: list[str], request: Request) -> None:
    for i, word in enumerate(tokens.words):
        if not tokens.free(i) or _vocabulary_word(word) or len(word) < NAME_MIN_FUZZY:
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", word) or word.endswith(NOT_NAME_SUFFIXES):
            continue
        if i > 0 and tokens.words[i - 1] in NOT_BEFORE_NAME:
            continue
        match = match_character(_name_forms(word)[-1], characters)
        if match.name:
            tokens.used[i] = True
            tokens.names.add(i)
            request.characters.append(match.name)
            request.notes.append(f"Taking '{word}' as {match.name}.")


def _take_pose(tokens: Tokens, request: Request) -> None:
    if tokens.take_phrases(v.RANDOM_POSE_PHRASES):
        request.random_pose = True
    for _, phrase in tokens.take_phrases(v.POSTURE_PHRASES):
        request.posture = request.posture or v.POSTURE_PHRASES[phrase]
    for _, phrase in tokens.take_phrases(v.ACTION_PHRASES):
        _add_action(request, v.ACTION_PHRASES[phrase])
    for i, word in enumerate(tokens.words):
        if not tokens.free(i):
            continue
        if word in v.POSTURE_WORDS:
            tokens.used[i] = True
            request.posture = request.posture or v.POSTURE_WORDS[word]
        elif word in v.ACTION_WORDS:
            tokens.used[i] = True
            _add_action(request, v.ACTION_WORDS[word])
    if request.posture is None:
        implied = [v.ACTION_POSTURE[a] for a in request.actions if a in v.ACTION_POSTURE]
        request.posture = implied[0] if implied else None
    if request.has_pose_words:
        request.random_pose = False


def _add_action(request: Request, action: str) -> None:
    if action not in request.actions:
        request.actions.append(action)


def _leftover_prompt(tokens: Tokens) -> str:
    """Free tokens in runs, each run trimmed of filler at both ends; runs joined by commas."""
    spans: list[list[str]] = [[]]
    for word, used in zip(tokens.words, tokens.used, strict=True):
        if used:
            if spans[-1]:
                spans.append([])
        else:
            spans[-1].append(word)
    kept = []
    for span in spans:
        while span and (span[0] in v.FILLERS and span[0] not in SCENE_PREPOSITIONS):
            span = span[1:]
        while span and (span[-1] in v.FILLERS or span[-1] in SCENE_PREPOSITIONS):
            span = span[:-1]
        if span and not all(w in v.FILLERS for w in span):
            kept.append(" ".join(span))
    return ", ".join(dict.fromkeys(kept))


SCENE_PREPOSITIONS = {
    "in", "at", "to", "on", "under", "by", "near", "inside", "outside", "during", "wearing", "with",
    "beside", "behind", "through", "into", "across", "among", "against", "over", "above",
    "below", "around", "underneath", "in front of", "before", "after", "from", "without",
}  # fmt: skip


NAME_SLOT_FILLERS = {
    "me", "a", "an", "some", "of", "picture", "pictures", "image", "images", "pic", "pics",
    "please", "the", "us", "my", "our", "character", "oc", "named", "called", "pls",
}  # fmt: skip
LIST_JOINERS = {",", "and", "&"}


def _name_candidate(tokens: Tokens, i: int) -> bool:
    """Could the free word at i be a character's name? Not vocabulary, and not a thing."""
    word = tokens.words[i]
    if not tokens.free(i) or _vocabulary_word(word) or word in SCENE_PREPOSITIONS:
        return False
    if i > 0 and tokens.words[i - 1] in NOT_BEFORE_NAME:
        return False
    return re.fullmatch(r"[a-z][a-z0-9_-]{1,39}", word) is not None


def _listed_with_a_name(tokens: Tokens) -> set[int]:
    """Candidate words in a list of names joined by 'and' ('yuki and bob', 'bob, rin and mei')."""
    found: set[int] = set()
    i = 0
    while i < len(tokens.words):
        items, joiners, j = [], [], i
        while j < len(tokens.words) and (j in tokens.names or _name_candidate(tokens, j)):
            items.append(j)
            if j + 1 < len(tokens.words) and tokens.words[j + 1] in LIST_JOINERS:
                joiners.append(tokens.words[j + 1])
                j += 2
            else:
                break
        named = any(item in tokens.names for item in items)
        if len(items) > 1 and named and set(joiners) - {","}:
            found.update(item for item in items if item not in tokens.names)
        i = max(j, i) + 1
    return found


def _take_unknown_names(tokens: Tokens, request: Request) -> None:
    """Words in a name slot ('draw X', 'of X', 'X and yuki') that match no character."""
    words = tokens.words
    listed = _listed_with_a_name(tokens)
    for i in range(len(words)):
        if not _name_candidate(tokens, i):
            continue
        j = i - 1
        while j >= 0 and words[j] in NAME_SLOT_FILLERS:
            j -= 1
        before = words[j] if j >= 0 else ""
        capitalised = tokens.original[i][:1].isupper()
        slot = before in v.DRAW_VERBS or (j < i - 1 and words[i - 1] == "of")
        beside_name = before == "with" and j > 0 and j - 1 in tokens.names
        if (
            i in listed
            or (slot and not request.characters)
            or (capitalised and (beside_name or slot or i == 0))
        ):
            tokens.used[i] = True
            request.unknown.append(words[i])


def parse(text: str, context: PlannerContext) -> Request:
    tokens = Tokens.of(text)
    request = Request()
    request.seed = _take_seed(tokens)
    _take_names(tokens, context.characters, request)
    request.image_ref = _take_image_ref(tokens)
    # Before counts, so "every single character" is not a count of one.
    request.all_characters = bool(tokens.take_phrases(v.ALL_PHRASES))
    request.count = _take_count(tokens)
    _take_pose(tokens, request)
    _take_fuzzy_names(tokens, context.characters, request)
    _take_unknown_names(tokens, request)
    request.characters = list(dict.fromkeys(request.characters))
    request.prompt = _leftover_prompt(tokens)
    if request.posture is None and not request.random_pose:
        # Places imply postures ("on a sofa" sits, "in bed" lies); the words stay in the prompt.
        request.posture = posture_of(request.prompt)
    return request


CAST = r"(characters|chars|cast|roster|ocs|library|people|girls)"
LIST_PATTERNS = (
    r"\bwho (do|have|can|is|are|did|else)\b",
    r"\bwho's (in|there|available)\b",
    rf"\bwho\b.*\b{CAST}\b",
    rf"\b(list|show|see|display|view|what are|tell me)\b.*\b{CAST}\b",
    rf"\b(what|which) {CAST}\b",
    rf"\bhow many {CAST}\b",
    rf"\b{CAST} (do |did )?(i|we) (have|got|made)\b",
)
CREATE_PATTERNS = (
    r"\bnew (character|oc|girl|boy|person|heroine|hero)\b",
    r"\b(create|make|design|invent|add|build) (me )?(a |an )?(new |original )?(character|oc)\b",
)
SHOW_PATTERNS = (
    r"\b(show|open|see|display|view)\b.*\b(results|outputs?|last|latest|recent|previous|made)\b",
    r"\bwhat (did|have|has) (you|we|it) (just |already |last )?"
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
)


def _matches(patterns: tuple[str, ...], text: str) -> bool:
    return any(re.search(pattern, text) for pattern in patterns)


LIST_VERBS = {"list", "show", "see", "display", "view", "tell", "which", "what", "who", "name"}


def _asks_for_the_list(request: Request, norm: str) -> bool:
    """'list all characters' lists them; 'show all characters waving' draws them."""
    if request.characters or request.has_pose_words or not _matches(LIST_PATTERNS, norm):
        return False
    if not request.all_characters:
        return True
    return request.count is None and set(request.prompt.split()) <= LIST_VERBS


class RulePlanner:
    name = "rules"

    def plan(self, text: str, context: PlannerContext) -> Plan:
        norm = Tokens.of(text).text()
        request = parse(text, context)
        resolved = Resolved()
        no_target = not request.characters and not request.all_characters
        if _matches(CREATE_PATTERNS, norm):
            self._add(resolved, "create_character", _creation_args(text), context)
        elif _asks_for_the_list(request, norm):
            self._add(resolved, "list_characters", {}, context)
        elif no_target and _matches(SHOW_PATTERNS, norm) and not request.has_pose_words:
            self._add(resolved, "show_results", {"limit": request.count or 8}, context)
        elif no_target and _matches(FIND_POSE_PATTERNS, norm) and not request.random_pose:
            query = request.pose or request.prompt or "standing"
            self._add(resolved, "find_pose", {"query": query, "k": request.count or 3}, context)
        elif context.previous and (
            _matches(FOLLOW_UP_PATTERNS, norm) or request.image_ref is not None
        ):
            self._follow_up(request, norm, context, resolved)
        else:
            self._draw(request, context, resolved)
        return Plan(planner=self.name, reply=_reply(resolved), calls=resolved.calls)

    def _add(self, resolved: Resolved, tool: str, args: dict, context: PlannerContext) -> None:
        try:
            validated = validate_args(tool, args)
        except ValidationError as error:
            resolved.notes.append(f"I could not plan {tool}: {error.errors()[0]['msg']}.")
            return
        resolve_call(tool, validated, context, resolved)

    def _draw(self, request: Request, context: PlannerContext, resolved: Resolved) -> None:
        resolved.notes.extend(request.notes)
        for word in request.unknown:
            match = match_character(_name_forms(word)[-1], context.characters)
            resolved.notes.append(unknown_note(word, match, context.characters))
        if not request.characters and not request.all_characters:
            if not request.unknown:
                names = ", ".join(context.characters) or "none yet"
                resolved.notes.append(f"Who should I draw? Your characters: {names}.")
            return
        pose = None if request.random_pose else request.pose
        count = request.count or 1
        if request.all_characters or len(request.characters) > 1:
            targets = "all" if request.all_characters else request.characters
            args = {"characters": targets, "pose": pose, "prompt": request.prompt, "count": count}
            self._add(resolved, "batch", args, context)
        else:
            args = {
                "character": request.characters[0],
                "pose": pose,
                "prompt": request.prompt,
                "count": count,
                "seed": request.seed,
            }
            self._add(resolved, "generate", args, context)

    def _follow_up(
        self, request: Request, norm: str, context: PlannerContext, resolved: Resolved
    ) -> None:
        previous = context.previous
        assert previous is not None
        resolved.notes.extend(request.notes)
        args = dict(previous.call.args)
        image = _pick_image(previous.images, request.image_ref)
        if request.image_ref is not None and image is None:
            resolved.notes.append(f"There is no image {request.image_ref} in the last result.")
            return
        if request.has_pose_words:
            args["pose"] = request.pose
        elif request.random_pose:
            args["pose"] = None
        elif image is not None:
            args["pose"] = " ".join(image.pose_tags) or None
        if request.prompt:
            args["prompt"] = _merge_prompt(args.get("prompt") or "", request.prompt)
        single = image is not None or re.search(r"\banother\b", norm) is not None
        args["count"] = request.count or (1 if single else args.get("count", 1))
        names = request.characters
        if image is not None and not names:
            names = [image.character]
        if request.all_characters or len(names) > 1:
            args.pop("character", None)
            args.pop("seed", None)
            args["characters"] = "all" if request.all_characters else names
            self._add(resolved, "batch", args, context)
            return
        if names:
            args.pop("characters", None)
            args["character"] = names[0]
        if "character" not in args:
            self._add(resolved, "batch", args, context)
            return
        args["seed"] = request.seed if request.seed is not None else (image.seed if image else None)
        self._add(resolved, "generate", args, context)


def _is_place(scene: str) -> bool:
    """'at the beach' is a place; 'at night' and 'in a kimono' are not."""
    words = scene.split()
    return (
        bool(words)
        and words[0] in v.PLACE_PREPOSITIONS
        and not any(w in v.ATMOSPHERE or w in v.CLOTHING for w in words)
    )


def _merge_prompt(old: str, new: str) -> str:
    """A follow-up's scene adds to the last one, except that a new place replaces the old."""
    kept = [part for part in old.split(", ") if part]
    if _is_place(new.split(", ")[0]):
        kept = [part for part in kept if not _is_place(part)]
    return ", ".join(dict.fromkeys([*kept, new]))


def _pick_image(images: list[PreviousImage], ref: int | None) -> PreviousImage | None:
    if ref is None or not images:
        return None
    index = len(images) - 1 if ref == -1 else ref - 1
    return images[index] if 0 <= index < len(images) else None


def _creation_args(text: str) -> dict[str, str | None]:
    name_match = re.search(r"\b(?:named|called|name(?:d)? (?:her|him|it))\s+([A-Za-z0-9_-]+)", text)
    name = name_match[1].lower() if name_match else None
    description = text.split(":", 1)[1] if ":" in text else text
    if ":" not in text:
        description = re.sub(
            r"^.*?\b(new (character|oc|girl|boy|person|heroine|hero)|(character|oc))\b",
            "",
            description,
            count=1,
            flags=re.IGNORECASE,
        )
    if name_match:
        description = description.replace(name_match[0], "")
    description = re.sub(r"^\W*(who is|who has|that is|with|of|,|-)?\s*", "", description.strip())
    description = description.strip(" ,.;") or text.strip()
    return {"name": name, "description": description}


def _reply(resolved: Resolved) -> str:
    return compose_reply(resolved, fallback="I did not find anything to do in that.")
