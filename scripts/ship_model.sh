#!/usr/bin/env bash
# Installs a trained run as the shipped model and regenerates everything that describes it: the
# figures and run records under docs/, and the validation report. The model card and README are
# written by hand from the files this script puts in docs/runs/.
#
#   scripts/ship_model.sh RUN [WORKDIR]
#
# RUN is a run folder of scripts/train_model.sh after all its steps (best.safetensors,
# best_density.npz, best_attributes.npz, history.json, learning_curve.png, eval_heldout/,
# eval_real/, population/, attributes_report/, crossval_<sha>/); WORKDIR holds real_btk100.fits
# (default: data/). The shipped files are replaced; git has the previous ones.
set -euo pipefail
RUN=${1:?usage: scripts/ship_model.sh RUN [WORKDIR]}
WORK=${2:-data}
PKG=galsim_vae/data
for f in best.safetensors best_density.npz best_attributes.npz history.json \
    eval_heldout/evaluate.json eval_real/evaluate.json population/population.json \
    attributes_report/attributes.json; do
    [ -f "$RUN/$f" ] || { echo "missing $RUN/$f: run the training script and fit-attributes" >&2; exit 1; }
done
# 1. The model and its companions (each records the weights' SHA-256; get_model checks it, here
#    before anything is replaced).
python3 -c "import sys; from galsim_vae import get_model; m = get_model(sys.argv[1]); \
m.density; m.attributes; print('ok:', m.file_name, m.representation)" "$RUN/best.safetensors"
cp "$RUN/best.safetensors" "$PKG/default_vae.safetensors"
cp "$RUN/best_density.npz" "$PKG/default_vae_density.npz"
cp "$RUN/best_attributes.npz" "$PKG/default_vae_attributes.npz"
# 2. The numbers behind the model card and README.
cp "$RUN/history.json" docs/runs/default_history.json
cp "$RUN/eval_heldout/evaluate.json" docs/runs/default_evaluate_heldout_sims.json
cp "$RUN/eval_real/evaluate.json" docs/runs/default_evaluate_real.json
cp "$RUN/population/population.json" docs/runs/default_population.json
cp "$RUN/attributes_report/attributes.json" docs/runs/attributes_report.json
# 3. Its figures.
cp "$RUN/learning_curve.png" docs/figures/default_learning_curve.png
cp "$RUN/eval_real/reconstructions.png" docs/figures/reconstructions_real_heldout.png
cp "$RUN/eval_heldout/reconstructions.png" docs/figures/reconstructions_heldout_sims.png
cp "$RUN/eval_real/chi2_vae_vs_sersic.png" docs/figures/chi2_vae_vs_sersic.png
cp "$RUN/eval_real/latent_snr.png" docs/figures/latent_snr_default.png
cp "$RUN/eval_real/traversals.png" docs/figures/traversals_real.png
cp "$RUN/eval_real/rotation_denoising.png" docs/figures/rotation_denoising.png
cp "$RUN/population/population.png" docs/figures/population.png
if [ -f "$RUN/eval_real/reconstructions_refined.png" ]; then
    cp "$RUN/eval_real/reconstructions_refined.png" docs/figures/reconstructions_refined_real.png
fi
cp "$RUN/attributes_report/attributes.png" docs/figures/attributes.png
CV="$RUN/crossval_$(sha256sum "$RUN/best.safetensors" | cut -c1-12)"
if [ -f "$CV/crossval.json" ]; then
    cp "$CV/crossval.json" docs/runs/default_crossval.json
    cp "$CV/crossval.md" docs/runs/default_crossval.md
fi
# 4. The README's pictures, drawn by the README's own first command (and the same scene and a
#    gallery with the real galaxies beside them).
rm -rf "$WORK/draw_default"
python3 -m galsim_vae draw --out "$WORK/draw_default" \
    --real "${GALSIM_VAE_DATA:-../shared/data}/cosmos_btk100"
cp "$WORK/draw_default/scene.png" "$WORK/draw_default/gallery.png" \
    "$WORK/draw_default/scene_vs_real.png" "$WORK/draw_default/gallery_real.png" docs/figures/
# 5. The validation report against the real galaxies: 4 samples per real galaxy that passes the
#    cuts (46 since real stamps keep their pixels as observed, 2026-11-27; 53 before).
NREAL=$(python3 -c "import sys; from astropy.io import fits; \
print(int(fits.getdata(sys.argv[1], 'CATALOG')['passes'].sum()))" "$WORK/real_btk100.fits")
python3 -m galsim_vae validate "$WORK/real_btk100.fits" --out docs/validation --n-samples $((4 * NREAL)) \
    --loss-summary docs/runs/loss_comparison_summary.json --overwrite
