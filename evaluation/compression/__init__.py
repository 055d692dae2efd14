"""Lossless compression with the project's models: the file sizes that prove (or disprove) their likelihoods.

* ``tables``: every pixel's (or latent bucket's) distribution as a float64 probability table, and the integer
  quantisation the entropy coder applies to it;
* ``latent_buckets``: the equal-prior-mass discretisation of a VAE's latent space;
* ``arm_coding``: range coding with an autoregressive model, pixel by pixel through the cached sampler's path;
* ``bits_back``: bits-back ANS for VAEs (Townsend, Bird & Barber 2019), images chained per lane;
* ``codecs``: which coder a run gets, and why some models get none;
* ``container``: the file format (header, streams, checksums) and its one-line errors;
* ``identity``: the hash that ties a file to the model that wrote it;
* ``baselines``: gzip, bz2, lzma and PNG on the same images.

The entropy coders are ``constriction``'s (ANS and range coding); nothing here codes bits by hand.
"""
