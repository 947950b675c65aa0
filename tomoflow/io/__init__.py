"""File formats: MRC maps and tomograms, RELION STAR particle lists, PDB/mmCIF atomic models."""
