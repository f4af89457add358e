"""Mutants of part 5 (train.py): loss, perplexity, train_step, evaluate and the checkpoint policy."""

from __future__ import annotations

from autograder.qa.mutants import Edit, Mutant

M = "train"
LOSS = "train.sequence_loss"
STEP = "train.train_step"
CLIP = "train.train_step_clipping"
EVALUATE = "train.evaluate"
SCHEDULE = "train.checkpoint_schedule"
BEST = "train.save_best"
RESTORE = "train.restore"
FRESH = "train.fresh_model"
GRAD_NORM = "train.embedding_grad_norm"
COMPILED = "train.compiled_steps"
DTYPES = "train.step_dtypes"
RESTORE_CLOCK = "train.restore_clock"
BEST_NUMBER = "train.best_checkpoint_number"
TRAINING_FLAG = "train.train_step_training"

MEAN_LOSS = "return tf.reduce_mean(losses)"
FORWARD = "loss = sequence_loss(labels, model(inputs, training=True))"
CLIPPING = "grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=grad_norm)"
APPLY = "optimizer.apply_gradients(zip(grads, variables, strict=True))"
SAVE_DUE = "return due_by_steps or due_by_time"

MUTANTS = [
    Mutant(
        "loss-on-probabilities",
        "sequence_loss applies the softmax first and then the from-logits cross-entropy (a double softmax)",
        Edit(M, "sequence_loss", patch=(("logits=logits)", "logits=tf.nn.softmax(logits))"),)),
        (LOSS,),
    ),
    Mutant(
        "loss-mean-over-time-summed-over-batch",
        "sequence_loss averages over time but sums over the batch",
        Edit(M, "sequence_loss", patch=((MEAN_LOSS, "return tf.reduce_sum(tf.reduce_mean(losses, axis=1))"),)),
        (LOSS,),
    ),
    Mutant(
        "loss-summed",
        "sequence_loss sums the per-token losses instead of averaging them",
        Edit(M, "sequence_loss", patch=((MEAN_LOSS, "return tf.reduce_sum(losses)"),)),
        (LOSS,),
    ),
    Mutant(
        "perplexity-base-2",
        "perplexity is 2 ** loss although the loss is in nats",
        Edit(M, "perplexity", patch=(("return tf.exp(loss)", "return tf.pow(2.0, loss)"),)),
        (LOSS, EVALUATE),
    ),
    Mutant(
        "train-step-no-update",
        "train_step computes the gradients but never applies them",
        Edit(M, "train_step", patch=((f"    {APPLY}\n", ""),)),
        (STEP,),
    ),
    Mutant(
        "train-step-loss-outside-tape",
        "train_step computes the loss outside the GradientTape, so there are no gradients",
        Edit(M, "train_step", patch=((f"with tf.GradientTape() as tape:\n        {FORWARD}",
                                      f"{FORWARD}\n    with tf.GradientTape() as tape:\n        pass"),)),
        (STEP, CLIP),
    ),
    Mutant(
        "train-step-norm-after-clipping",
        "train_step reports the global norm of the clipped gradients instead of the norm before clipping",
        Edit(M, "train_step", patch=((CLIPPING, f"{CLIPPING}\n        grad_norm = tf.linalg.global_norm(grads)"),)),
        (CLIP,),
    ),
    Mutant(
        "train-step-clip-per-variable",
        "train_step clips every gradient to clip_norm on its own instead of clipping their global norm",
        Edit(M, "train_step", patch=((CLIPPING, "grads = [tf.clip_by_norm(g, clip_norm) for g in grads]"),)),
        (CLIP,),
    ),
    Mutant(
        "train-step-clip-ignored",
        "train_step never clips the gradients",
        Edit(M, "train_step", patch=((f"    if clip_norm is not None:\n        {CLIPPING}\n", ""),)),
        (CLIP,),
    ),
    Mutant(
        "train-step-gradient-ascent",
        "train_step applies the negated gradients (a sign error)",
        Edit(M, "train_step", patch=((APPLY, APPLY.replace("zip(grads,", "zip([-g for g in grads],")),)),
        (STEP,),
    ),
    Mutant(
        "evaluate-mean-of-batch-means",
        "evaluate averages the batch losses, so the smaller last batch weighs as much as a full one",
        Edit(M, "evaluate", patch=(
            ("total += float(tf.reduce_sum(", "total += float(tf.reduce_mean("),
            ("count += int(tf.size(losses))", "count += 1"),
        )),
        (EVALUATE,),
    ),
    Mutant(
        "evaluate-perplexity-of-sum",
        "evaluate reports exp of the summed loss as the perplexity",
        Edit(M, "evaluate", patch=(("float(perplexity(loss))", "float(perplexity(total))"),)),
        (EVALUATE,),
    ),
    Mutant(
        "evaluate-ignores-max-batches",
        "evaluate always runs over the whole dataset, ignoring max_batches",
        Edit(M, "evaluate", patch=(("dataset = dataset.take(int(max_batches))", "pass"),)),
        (EVALUATE,),
    ),
    Mutant(
        "checkpoint-every-step",
        "should_save is always true, so a checkpoint is written on every step",
        Edit(M, "CheckpointPolicy.should_save", patch=((SAVE_DUE, "return True"),)),
        (SCHEDULE,),
    ),
    Mutant(
        "checkpoint-time-ignored",
        "should_save only counts steps and never saves because checkpoint_minutes have passed",
        Edit(M, "CheckpointPolicy.should_save", patch=((SAVE_DUE, "return due_by_steps"),)),
        (SCHEDULE,),
    ),
    Mutant(
        "best-saved-every-time",
        "save_best saves a 'best' checkpoint on every evaluation, whether or not the loss improved",
        Edit(M, "CheckpointPolicy.save_best", patch=((
            "        if not valid_loss < float(self.best_loss.numpy()):  # also False for NaN\n"
            "            return False\n", ""),)),
        (BEST,),
    ),
    Mutant(
        "resume-model-only",
        "restore reloads only the model's weights: the optimizer state, the step and the data position restart",
        Edit(M, "CheckpointPolicy.restore", patch=((
            "self.checkpoint.restore(latest).assert_existing_objects_matched()",
            "tf.train.Checkpoint(model=self.model).restore(latest).expect_partial()"),)),
        (RESTORE,),
    ),
    Mutant(
        "resume-optimizer-not-built",
        "restore does not build the optimizer first: restore() returns without the Adam moments (TF defers them "
        "to the optimizer's first build, which needs the checkpoint file still on disk)",
        Edit(M, "CheckpointPolicy.restore", patch=((
            "        if not self.optimizer.built:\n            self.optimizer.build(self.model.trainable_variables)\n",
            ""),)),
        (RESTORE,),
    ),
    Mutant(
        "train-step-numpy-in-clip",
        "train_step decides whether to clip with grad_norm.numpy() > clip_norm: right eagerly, a crash in tf.function "
        "(make_train_step)",
        Edit(M, "train_step", patch=(("if clip_norm is not None:", "if clip_norm is not None and grad_norm.numpy() > "
                                                                   "clip_norm:"),)),
        (COMPILED,),
    ),
    Mutant(
        "train-step-indexed-slices-norm",
        "train_step takes the global norm of the gradients as they come, so an embedding's IndexedSlices count each "
        "repeated row on its own",
        Edit(M, "train_step", patch=(("grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]",
                                      "grads = tape.gradient(loss, variables)"),)),
        (GRAD_NORM,),
    ),
    Mutant(
        "train-step-variables-before-forward",
        "train_step reads model.trainable_variables before the forward pass: empty on a model never called before",
        Edit(M, "train_step", patch=(
            ("    variables = model.trainable_variables\n", ""),
            ("    with tf.GradientTape() as tape:\n",
             "    variables = model.trainable_variables\n    with tf.GradientTape() as tape:\n"),
        )),
        (FRESH,),
    ),
    Mutant(
        "loss-float64",
        "sequence_loss averages the per-token losses in float64 and returns a float64 scalar",
        Edit(M, "sequence_loss", patch=(("return tf.reduce_mean(losses)",
                                         "return tf.reduce_mean(tf.cast(losses, tf.float64))"),)),
        (DTYPES,),
    ),
    Mutant(
        "restore-keeps-save-clock",
        "restore leaves last_save_time at the policy's construction, so a timed save can come right after resuming",
        Edit(M, "CheckpointPolicy.restore", patch=(("        self.last_save_time = self.clock()\n", ""),)),
        (RESTORE_CLOCK,),
    ),
    Mutant(
        "best-numbered-by-count",
        "save_best numbers the best checkpoints 1, 2, ... (CheckpointManager.save()) instead of by the step",
        Edit(M, "CheckpointPolicy.save_best",
             patch=(("self.best_manager.save(checkpoint_number=int(self.step.numpy()))", "self.best_manager.save()"),)),
        (BEST_NUMBER,),
    ),
    Mutant(
        "train-step-training-false",
        "train_step calls the model with training=False, so dropout never acts while training",
        Edit(M, "train_step", patch=(("loss = sequence_loss(labels, model(inputs, training=True))",
                                      "loss = sequence_loss(labels, model(inputs, training=False))"),)),
        (TRAINING_FLAG,),
    ),
]
