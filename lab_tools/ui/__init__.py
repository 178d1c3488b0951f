"""`lab ui`: a local web page to write, check and preview one taxonomy leaf.

Modules: :mod:`.paths` (leaf paths kept inside the taxonomy root), :mod:`.form` (form data ->
``qna.yaml`` / ``attribution.txt`` text, and back), :mod:`.checks` (the validator and the license
check run on what the page would write), :mod:`.jobs` (preview generation in the background),
:mod:`.gitops` (optional branch + commit), :mod:`.api` (the JSON endpoints), :mod:`.server`
(the Starlette application, its safety checks and ``serve``), :mod:`.cli` (the command),
:mod:`.shots` (headless Chromium for the browser tests and the screenshots).
Nothing here is imported by ``lab --help``.
"""
