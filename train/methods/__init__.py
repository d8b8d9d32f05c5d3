"""Training methods, one module each; :mod:`headcam.train.registry` names them and
:func:`~headcam.train.methods.base.build_method` builds one."""
