"""Data: preparing Kaggle's download (`catalog`, `fingerprint`, `splits`, the TFDS builder
`best_artworks`, the embedded `synthetic` set) and feeding it (`preprocess`, `augment`,
`input_pipeline`, and cached backbone features in `feature_batches`)."""
