"""Data: preparing Kaggle's download (`catalog`, `fingerprint`, `splits`, the TFDS builder
`best_artworks`, the embedded `synthetic` set; WikiArt's three distributions in `wikiart`, with
`dates`) and feeding it (`preprocess`, `augment`, `input_pipeline`, and cached backbone features
in `feature_batches`)."""
