"""Where evaluations run: one engine per backend (serial, SCOOP, Ray) behind ``toolbox.map``, and the
setup of every evaluating process (``process``)."""
