"""The paper's ablations as something to rerun: `mrcnn-tf ablate --study NAME`."""
