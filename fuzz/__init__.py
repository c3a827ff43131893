"""Coverage-guided fuzzing of every decoder that reads bytes from the network or a file.

``targets.py`` holds one function per decoder (shared by atheris and the tests),
``run.py`` runs them under atheris, ``seeds.py`` writes the seed corpora.
"""
