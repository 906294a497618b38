"""A user's own filter and tagger, as a package outside thresher would hold them (README "Your own filters
and taggers"); the tests name them in config alone, as `thresher.tests.plugin_examples.<module>:<Class>`,
which the Spark workers import as the driver does."""
