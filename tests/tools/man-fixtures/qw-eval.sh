# Files the qw-eval(1) examples name: the repository's golden fixtures and bench configs.
ln -s "$QW_SRCDIR/tests" tests
