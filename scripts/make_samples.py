#!/usr/bin/env python3
"""Regenerates the cross-modal samples in assets/: the project's own work, no
dataset file.

- assets/faces/<emotion>_<sex>.svg: a drawn face per emotion and sex (brows,
  eyes and mouth shaped per emotion; hair per sex).
- assets/voices/<emotion>_<sex>.mp3: a sentence fitting the emotion, spoken
  by espeak-ng (a female or male voice variant) with prosody chosen per
  emotion (pitch, pitch range, rate, volume through SSML), then shaped by sox
  (tremolo for fear, a little overdrive for anger) and encoded as 64 kbit/s
  mono MP3, which every browser plays.

Needs python3, espeak-ng and sox with libsox-fmt-mp3 (scripts/setup.sh
installs them). Usage: python3 scripts/make_samples.py [ASSETS_DIR]
"""

import pathlib
import subprocess
import sys
import tempfile

EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SEXES = ["female", "male"]

# --- voices -----------------------------------------------------------------

SENTENCES = {
    "angry": "I told you a hundred times. Do not touch my things!",
    "disgust": "Ugh. That smell is absolutely revolting.",
    "fear": "Wait. Did you hear that? Someone is in the house.",
    "happy": "That is wonderful news! I am so happy for you!",
    "sad": "I really miss the way things used to be.",
    "surprise": "Oh! I never expected to see you here!",
    "neutral": "The meeting is on Tuesday at three o'clock.",
}

# SSML prosody per emotion: (pitch, range, rate, volume).
PROSODY = {
    "angry": ("-10%", "x-high", "115%", "x-loud"),
    "disgust": ("-20%", "low", "80%", "medium"),
    "fear": ("+30%", "high", "125%", "soft"),
    "happy": ("+20%", "x-high", "110%", "loud"),
    "sad": ("-25%", "x-low", "75%", "soft"),
    "surprise": ("+35%", "x-high", "105%", "loud"),
    "neutral": ("0%", "medium", "100%", "medium"),
}

# sox effects after synthesis, per emotion.
EFFECTS = {
    "angry": ["overdrive", "6", "gain", "-4"],
    "fear": ["tremolo", "7", "40"],
    "sad": ["reverb", "30"],
}

VOICES = {"female": "en-us+f3", "male": "en-us+m3"}


def make_voice(emotion: str, sex: str, out: pathlib.Path) -> None:
    pitch, pitch_range, rate, volume = PROSODY[emotion]
    ssml = (
        f'<speak><prosody pitch="{pitch}" range="{pitch_range}" rate="{rate}" volume="{volume}">'
        f"{SENTENCES[emotion]}</prosody></speak>"
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw = pathlib.Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-m", "-v", VOICES[sex], "-w", str(raw), ssml], check=True)
        subprocess.run(
            ["sox", str(raw), "-C", "64", "-r", "22050", "-c", "1", str(out)]
            + EFFECTS.get(emotion, [])
            + ["norm", "-1"],
            check=True,
        )


# --- faces ------------------------------------------------------------------

BACKGROUNDS = {
    "angry": "#f6c7c3",
    "disgust": "#d8e8c4",
    "fear": "#e1d5f0",
    "happy": "#fbe7a8",
    "sad": "#c9dcf2",
    "surprise": "#fcd6b5",
    "neutral": "#e3e3e3",
}
SKIN = "#f1c7a1"
INK = "#3b2a22"
HAIR = {"female": "#6b3d23", "male": "#2f2622"}


def brows(emotion: str) -> str:
    """Two brow strokes; (inner y, outer y) offsets say the emotion."""
    inner, outer, lift = {
        "angry": (12, -6, 0),
        "disgust": (6, 0, 0),
        "fear": (-8, 4, -6),
        "happy": (0, 0, -4),
        "sad": (-10, 6, 0),
        "surprise": (0, 0, -14),
        "neutral": (0, 0, 0),
    }[emotion]
    y = 78 + lift
    left = f'<path d="M62 {y + outer} Q74 {y - 6 + (inner + outer) / 2} 88 {y + inner}"/>'
    right_inner = inner if emotion != "disgust" else -4
    right = f'<path d="M112 {y + right_inner} Q126 {y - 6 + (right_inner + outer) / 2} 138 {y + outer}"/>'
    return f'<g fill="none" stroke="{INK}" stroke-width="5" stroke-linecap="round">{left}{right}</g>'


def eyes(emotion: str, sex: str) -> str:
    parts = []
    for cx in (75, 125):
        if emotion == "happy":
            parts.append(
                f'<path d="M{cx - 10} 100 Q{cx} 88 {cx + 10} 100" fill="none" stroke="{INK}" '
                f'stroke-width="4" stroke-linecap="round"/>'
            )
            continue
        ry = {"surprise": 11, "fear": 10, "angry": 4.5, "disgust": 4, "sad": 6}.get(emotion, 7)
        rx = 9 if emotion in ("surprise", "fear") else 8
        parts.append(f'<ellipse cx="{cx}" cy="98" rx="{rx}" ry="{ry}" fill="#fff" stroke="{INK}" stroke-width="2"/>')
        pupil = 3.5 if emotion in ("surprise", "fear") else 4.5
        parts.append(f'<circle cx="{cx}" cy="{99 if emotion != "sad" else 101}" r="{min(pupil, ry)}" fill="{INK}"/>')
        if emotion == "sad":
            parts.append(f'<path d="M{cx - 10} 94 L{cx + 10} 94" stroke="{SKIN}" stroke-width="5"/>')
        if sex == "female":
            parts.append(
                f'<path d="M{cx - 9} {98 - ry} l-4 -4 M{cx} {97 - ry} l0 -5 M{cx + 9} {98 - ry} l4 -4" '
                f'stroke="{INK}" stroke-width="2" stroke-linecap="round"/>'
            )
    if emotion == "sad":
        parts.append('<path d="M128 112 q-5 9 0 12 q5 -3 0 -12z" fill="#7fb4e6"/>')
    if emotion == "fear":
        parts.append('<path d="M150 70 q-5 9 0 12 q5 -3 0 -12z" fill="#9cd0f0"/>')
    return "".join(parts)


def mouth(emotion: str, sex: str) -> str:
    lip = "#c0504d" if sex == "female" else INK
    stroke = f'fill="none" stroke="{lip}" stroke-width="5" stroke-linecap="round"'
    return {
        "angry": f'<path d="M80 146 Q100 134 120 146" {stroke}/><path d="M84 146 L116 146" stroke="#fff" stroke-width="3"/>',
        "disgust": f'<path d="M80 142 Q88 136 96 144 T114 140 L122 136" {stroke}/>',
        "fear": f'<path d="M80 140 Q100 132 120 140 L118 152 Q100 146 82 152 Z" fill="#5a2a2a" stroke="{lip}" stroke-width="3"/>'
        '<path d="M84 141 L116 141" stroke="#fff" stroke-width="3"/>',
        "happy": f'<path d="M76 134 Q100 162 124 134 Z" fill="#7a2d2d" stroke="{lip}" stroke-width="3" stroke-linejoin="round"/>'
        '<path d="M82 137 L118 137" stroke="#fff" stroke-width="4"/>',
        "sad": f'<path d="M80 150 Q100 134 120 150" {stroke}/>',
        "surprise": f'<ellipse cx="100" cy="144" rx="10" ry="13" fill="#5a2a2a" stroke="{lip}" stroke-width="3"/>',
        "neutral": f'<path d="M84 142 L116 142" {stroke}/>',
    }[emotion]


def hair(sex: str, behind: bool) -> str:
    color = HAIR[sex]
    if sex == "female":
        if behind:
            return f'<path d="M40 100 Q36 30 100 28 Q164 30 160 100 L166 176 Q140 186 124 170 L76 170 Q60 186 34 176 Z" fill="{color}"/>'
        return f'<path d="M44 96 Q46 36 100 34 Q154 36 156 96 Q140 62 104 58 Q90 74 56 74 Q48 84 44 96 Z" fill="{color}"/>'
    if behind:
        return ""
    return f'<path d="M42 92 Q40 34 100 32 Q160 34 158 92 Q150 62 130 58 Q100 66 70 58 Q50 62 42 92 Z" fill="{color}"/>'


def face_svg(emotion: str, sex: str) -> str:
    jaw = (
        '<path d="M60 140 Q100 196 140 140" fill="none" stroke="#c9a07e" stroke-width="1" '
        'stroke-dasharray="1 3" opacity="0.8"/>'
        if sex == "male"
        else ""
    )
    blush = '<ellipse cx="66" cy="124" rx="9" ry="5" fill="#f29b9b" opacity="0.5"/><ellipse cx="134" cy="124" rx="9" ry="5" fill="#f29b9b" opacity="0.5"/>'
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 200" width="200" height="200" '
        f'role="img" aria-label="a drawn {sex} face looking {emotion}">'
        f"<title>{emotion}, {sex} (drawn sample)</title>"
        f'<rect width="200" height="200" rx="24" fill="{BACKGROUNDS[emotion]}"/>'
        f"{hair(sex, behind=True)}"
        f'<ellipse cx="42" cy="108" rx="9" ry="14" fill="{SKIN}"/><ellipse cx="158" cy="108" rx="9" ry="14" fill="{SKIN}"/>'
        f'<ellipse cx="100" cy="108" rx="58" ry="70" fill="{SKIN}"/>'
        f"{jaw}{hair(sex, behind=False)}{brows(emotion)}{eyes(emotion, sex)}"
        f'<path d="M100 104 Q96 120 100 124 Q104 125 107 122" fill="none" stroke="#c9926a" stroke-width="3" stroke-linecap="round"/>'
        f"{blush if emotion in ('happy', 'surprise') or sex == 'female' else ''}"
        f"{mouth(emotion, sex)}</svg>\n"
    )


def main() -> None:
    assets = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent / "assets")
    (assets / "faces").mkdir(parents=True, exist_ok=True)
    (assets / "voices").mkdir(parents=True, exist_ok=True)
    for emotion in EMOTIONS:
        for sex in SEXES:
            (assets / "faces" / f"{emotion}_{sex}.svg").write_text(face_svg(emotion, sex))
            make_voice(emotion, sex, assets / "voices" / f"{emotion}_{sex}.mp3")
    print(f"wrote {len(EMOTIONS) * len(SEXES)} faces and voices under {assets}")


if __name__ == "__main__":
    main()
