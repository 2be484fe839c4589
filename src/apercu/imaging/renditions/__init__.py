"""Renditions: any size, crop and format of an image, named by the options of a signed URL.

`options` (the URL grammar, its canonical form, `negotiate`), `geometry` (what size comes out, the one rule the
web and the renderer share), `render` (the pixels, through libvips), `focal` (the focal point at ingest).
The entry point that renders from the bytes of an original is `analyse.render_rendition`.
"""
