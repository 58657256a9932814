"""Deploy a trained model: fold it for inference, export it, save it as a Hugging Face folder.

| module | what |
|---|---|
| ``fold`` | conv + BN and Salient-gate folding of one residual block (``fold_residual_block``) |
| ``reparameterize`` | ``reparameterize(model)``: every foldable block, the stem, then timm's own hooks |
| ``export`` | ONNX with an onnxruntime parity check; torch.export's ExportedProgram |
| ``hub`` | ``save_hf_folder`` (timm's ``save_for_hf`` with the preprocessing as evaluated) and ``model_card`` |

Import the modules (``from salient_timm.deploy.export import export_onnx``); ``salient_timm.reparameterize`` is the
public entry point. The package re-exports nothing: ``fold`` sits below the surgery (a slotted block's ``fuse()``
folds itself) and ``reparameterize`` above it (it finds the blocks), so one package-level import of both would
run in a circle.
"""
