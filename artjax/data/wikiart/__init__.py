"""WikiArt, the field's benchmark, from any of its three distributions (`layouts`): the ArtGAN
release, the Hugging Face `huggan/wikiart` parquet shards and Kaggle's *Painter by Numbers*. Each is
read into one table (`layouts.Listing`), whose style and genre names are joined across the three
(`names`), and prepared by one TFDS builder (`builder`) with Best Artworks' guarantees.
"""
