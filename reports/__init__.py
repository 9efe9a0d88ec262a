"""Renderers of the JSON result document (:mod:`conformance.report`, schema ``bpfcheck.run`` v1).

They read only the document (plain dicts), never runner objects, so any stored run can be
rendered again: :mod:`reports.junit` (JUnit XML), :mod:`reports.markdown` (pull-request
summary), :mod:`reports.html` (single-file offline report), :mod:`reports.compare` (the CI
regression gate), with :mod:`reports.document` for loading and the shared computations and
:mod:`reports.command` for ``bpfcheck report``.
"""
