"""R packages: uploads with curl and a CRAN-like repository that ``install.packages`` reads."""
