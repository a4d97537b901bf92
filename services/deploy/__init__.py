"""Deployment generated from the declared world: ``concord deploy render kubernetes``.

:mod:`services.deploy.kubernetes` builds every object from the world (pure: no files, no
cluster), :mod:`services.deploy.strimzi` the Strimzi custom resources among them, and
:mod:`services.deploy.render` reads the repository's files it needs and writes the folder.
"""
