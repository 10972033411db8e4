"""The small web site: survey links (``mailhelp serve``), its guard and its pages."""
