"""Data: corpus adapters (``corpora``), synthetic FF++ (``synth``), face cropping (``preprocess``), the Parquet
manifest that ties them together (``manifest``) and identity-disjoint splits (``splits``, ``audit``)."""
