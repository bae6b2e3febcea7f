"""``wbcap view``: a finished run or image folder in a web browser.

* :mod:`wbcap.view.manifest`: what the page shows, read from the output folder (``view.json``).
* :mod:`wbcap.view.site`: the site (page, three.js, manifest, links to the folder's files), served
  on 127.0.0.1 or written as a folder to send (``--html``).
* :mod:`wbcap.view.server`: the static server with HTTP Range requests (video seeking), standard
  library only; copied as ``serve.py`` into ``--html`` folders.
* :mod:`wbcap.view.vendor`: the copy of three.js r187 in ``static/vendor/three`` and its update.
* ``static/``: ``index.html``, ``app.js`` (the page), ``style.css``.
"""
