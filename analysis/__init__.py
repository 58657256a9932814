"""salient-analyze: parameter, FLOP and size accounting for attention add-ons on ResNets.

Installed as the ``salient_analysis`` package (source folder ``analysis/``); depends on
``salient_timm``, never the reverse.
"""
