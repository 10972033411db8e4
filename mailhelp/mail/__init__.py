"""Mail in: bytes to values (parse, charsets, TNEF, quoting, classify, bounces, proof of
sender) and the standard-library builder of mail out (composer). Pure: no database."""
