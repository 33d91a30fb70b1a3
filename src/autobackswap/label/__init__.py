"""Patch labelling: model-assisted labelling (:mod:`.assist`) and the web app (:mod:`.server`,
behind ``autobackswap label``). The label store itself is :class:`autobackswap.data.labelstore.LabelStore`."""
