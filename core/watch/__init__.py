"""``oomscope watch``: the engine without a window; JSON lines or readable lines on stdout.

``arguments`` declares and checks the command line, ``run`` is the command (the sinks, the
loop that follows the engine's events until the workers are gone, signals), ``printers`` says
what is printed (``--json`` or text) and ``hook`` runs ``--on-event`` commands.
"""
