"""Batch scoring of review files, in bounded memory: ``python -m sentiment.scoring``.

- ``core``: what one chunk of texts becomes (labels, scores, the reason a row has none), the
  output's columns, and which model and version a ``--model`` names;
- ``inputs``: the files a ``--input`` names, read a chunk of one column at a time;
- ``storage``: local paths and ``s3://`` URIs, written complete or not at all;
- ``batch``: one file scored by one process, or by a pool of Ray actors (``on_ray``).
"""
