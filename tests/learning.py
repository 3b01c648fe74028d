"""The short learning run the model tests share: a model trained through ``fit`` on
synthetic-tiny and scored on validation, to be compared with popularity (the ``tiny`` fixture
of ``conftest.py`` holds the data, the validation loader and popularity's NDCG@10)."""
from fatsmb_lib.data.batches import make_loader
from fatsmb_lib.support.runtime import make_generator
from fatsmb_lib.training.evaluate import evaluate
from fatsmb_lib.training.train import TrainConfig, fit


def best_validation(model, data, valid, view, *, epochs: int, lr: float, collate=None,
                    batch_size: int = 64) -> float:
    """Train ``model`` on ``view`` for ``epochs`` and return its best validation NDCG@10."""
    history = fit(model, params=model.parameters(),
                  train_batches=lambda epoch: make_loader(view, batch_size, True,
                                                          make_generator(epoch), collate),
                  loss_fn=model.loss, validate=lambda: evaluate(model, valid, ks=(10,)),
                  cfg=TrainConfig(lr=lr, weight_decay=0.01, max_epochs=epochs, patience=epochs,
                                  min_epochs=1, grad_clip=1.0, monitor="NDCG@10", seed=0,
                                  eval_every=1, warmup_epochs=0, lr_decay="none",
                                  precision="fp32"),
                  checkpoint_path=None, fingerprint=data.fingerprint, config={}, progress=False,
                  log=lambda line: None)
    return history.best_value
