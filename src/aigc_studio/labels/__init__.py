"""AI-generated content labels and provenance, as pure functions over images, files and text.

- ``aigc``: the GB 45438-2025 implicit label (the ``AIGC`` JSON field) and its integrity data;
- ``xmp`` and ``embed``: XMP (TC260 AIGC, IPTC digital source type) and the infotext in PNG, JPEG, WebP;
- ``credentials``: C2PA content credentials (signing, reading, validation) with c2pa-python;
- ``watermark``: the invisible watermark that carries a payload derived from the item's id;
- ``visible``: the visible mark on images;
- ``text``: the label line on text, and the labels in Markdown, HTML and Word files;
- ``nsfw``: the NSFW classifier and the prompt block-list.

Nothing here knows the studio's storage or settings; ``services/labeling.py`` (images) and
``services/text_labels.py`` (text) put them together, ``services/inspect.py`` reads them back.
"""
