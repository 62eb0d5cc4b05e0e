"""Shapes world: a seeded, deterministic generator of scenes, questions, answers and captions.

- `vocabulary`: the colours, shapes and sizes, and the compositional hold-out.
- `scenes`: sampling a scene (objects with ground-truth boxes) and rendering it with Pillow.
- `questions`: the question families and their paraphrase templates.
- `captions`: reference captions for a scene.
- `splits`: seeds per split, the examples of a split, JSONL export and import.
"""
