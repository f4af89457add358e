"""Mutants of part 8: fine-tuning (finetune.py: freeze, trainable_parameters, the LoRA adapter and its merge,
train_only_adapters)."""

from __future__ import annotations

from autograder.qa.mutants import Edit, Mutant

F = "finetune"
ORACLE = "finetune.lora_oracle"
INIT = "finetune.lora_init"
IDENTITY = "finetune.identity_at_start"
MERGE = "finetune.merge"
FREEZE = "finetune.freeze"
ADAPTERS_ONLY = "finetune.adapters_only"
COUNTS = "finetune.trainable_parameters"
ARGUMENTS = "finetune.argument_checks"

B_INIT = 'self.lora_b = self.add_weight(name="lora_b", shape=(self.rank, d_out), initializer="zeros")'
A_INIT = "initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(d_in))"
PRODUCT = "tf.matmul(self.lora_a, self.lora_b)"
SCALED = "return kernel + (self.alpha / self.rank) * update"
ONLY = "weight.trainable = id(weight) in adapter_weights"

MUTANTS = [
    Mutant(
        "lora-b-random",
        "B starts random like A instead of zeros (the adapted model is not the pretrained one at the start)",
        Edit(F, "LoRA.build", patch=((B_INIT, B_INIT.replace('initializer="zeros"', A_INIT)),)),
        (INIT, IDENTITY),
    ),
    Mutant(
        "lora-a-zero",
        "A starts as zeros like B (A B stays 0 and neither gets a gradient: nothing is learned)",
        Edit(F, "LoRA.build", patch=((A_INIT, 'initializer="zeros"'),)),
        (INIT,),
    ),
    Mutant(
        "lora-a-unit-normal",
        "A is drawn from N(0, 1) instead of N(0, 1 / d_in)",
        Edit(F, "LoRA.build", patch=(("stddev=1.0 / math.sqrt(d_in)", "stddev=1.0"),)),
        (INIT,),
    ),
    Mutant(
        "lora-scale-alpha",
        "the update is scaled by alpha instead of alpha / r",
        Edit(F, "LoRA.call", patch=((SCALED, "return kernel + self.alpha * update"),)),
        (ORACLE, MERGE),
    ),
    Mutant(
        "lora-scale-r-over-alpha",
        "the update is scaled by r / alpha instead of alpha / r",
        Edit(F, "LoRA.call", patch=((SCALED, "return kernel + (self.rank / self.alpha) * update"),)),
        (ORACLE, MERGE),
    ),
    Mutant(
        "lora-product-transposed",
        "the update is (A B)^T, reshaped to the kernel's shape, instead of A B",
        Edit(F, "LoRA.call", patch=((PRODUCT, f"tf.transpose({PRODUCT})"),)),
        (ORACLE, MERGE),
    ),
    Mutant(
        "lora-shapes-swapped",
        "A is [r, d_in] and B [d_out, r] and the update is B A transposed: the weights of another layout",
        (Edit(F, "LoRA.build", patch=(("shape=(d_in, self.rank)", "shape=(self.rank, d_in)"),
                                      ("shape=(self.rank, d_out)", "shape=(d_out, self.rank)"))),
         Edit(F, "LoRA.call", patch=((PRODUCT, "tf.transpose(tf.matmul(self.lora_b, self.lora_a))"),))),
        (ORACLE, INIT, MERGE),
    ),
    Mutant(
        "lora-update-replaces-kernel",
        "the adapter returns (alpha / r) A B alone, dropping the pretrained W",
        Edit(F, "LoRA.call", patch=((SCALED, "return (self.alpha / self.rank) * update + 0.0 * kernel"),)),
        (ORACLE, INIT, IDENTITY, MERGE),
    ),
    Mutant(
        "merge-wrong-sign",
        "merge subtracts (alpha / r) A B from W",
        Edit(F, "LoRA.merge", patch=(("kernel.assign(self(kernel))", "kernel.assign(2.0 * kernel - self(kernel))"),)),
        (MERGE,),
    ),
    Mutant(
        "merge-unscaled",
        "merge adds A B without the scale alpha / r",
        Edit(F, "LoRA.merge", patch=(("kernel.assign(self(kernel))",
                                      "kernel.assign(kernel + tf.reshape(tf.matmul(self.lora_a, self.lora_b), "
                                      "kernel.shape))"),)),
        (MERGE,),
    ),
    Mutant(
        "merge-keeps-b",
        "merge folds the update into W but leaves B as it was (the update then counts twice)",
        Edit(F, "LoRA.merge", patch=(("        self.lora_b.assign(tf.zeros_like(self.lora_b))\n", ""),)),
        (MERGE,),
    ),
    Mutant(
        "freeze-one-block-more",
        "freeze freezes blocks[:k + 1] (off by one)",
        Edit(F, "freeze", patch=(("in model.blocks[:num_blocks]:", "in model.blocks[: num_blocks + 1]:"),)),
        (FREEZE,),
    ),
    Mutant(
        "freeze-last-blocks",
        "freeze freezes the last k blocks instead of the first k",
        Edit(F, "freeze", patch=(("in model.blocks[:num_blocks]:",
                                                  "in model.blocks[len(model.blocks) - num_blocks :]:"),)),
        (FREEZE,),
    ),
    Mutant(
        "freeze-embedding-trainable",
        "freeze leaves the token embedding trainable",
        Edit(F, "freeze", patch=(("    model.token_embedding.trainable = False\n", ""),)),
        (FREEZE,),
    ),
    Mutant(
        "freeze-positions-trainable",
        "freeze leaves the learned position embedding trainable",
        Edit(F, "freeze", patch=(("        model.position_embedding.trainable = False\n", "        pass\n"),)),
        (FREEZE,),
    ),
    Mutant(
        "adapters-biases-trainable",
        "train_only_adapters leaves the pretrained biases trainable",
        Edit(F, "train_only_adapters", patch=((ONLY, f'{ONLY} or "bias" in weight.path'),)),
        (ADAPTERS_ONLY,),
    ),
    Mutant(
        "adapters-kernels-trainable",
        "train_only_adapters leaves the pretrained kernels trainable (the base W learns too)",
        Edit(F, "train_only_adapters", patch=((ONLY, f'{ONLY} or "kernel" in weight.path.split("/")[-1]'),)),
        (ADAPTERS_ONLY,),
    ),
    Mutant(
        "adapters-b-only",
        "train_only_adapters trains B only (A stays as drawn)",
        Edit(F, "train_only_adapters", patch=(("for weight in adapter.weights}", "for weight in adapter.weights "
                                                                                  'if "lora_b" in weight.path}'),)),
        (ADAPTERS_ONLY,),
    ),
    Mutant(
        "count-all-weights",
        "trainable_parameters counts every weight, frozen ones included",
        Edit(F, "trainable_parameters", patch=(("for variable in model.trainable_variables)",
                                                        "for variable in model.weights)"),)),
        (COUNTS,),
    ),
    Mutant(
        "count-variables",
        "trainable_parameters counts the trainable variables instead of their entries",
        Edit(F, "trainable_parameters", patch=(("math.prod(variable.shape)", "1"),)),
        (COUNTS,),
    ),
    Mutant(
        "lora-rank-unchecked",
        "LoRA.build drops the given check that the rank is at most min(d_in, d_out)",
        Edit(F, "LoRA.build", patch=(("        if self.rank > min(d_in, d_out):\n", "        if False:\n"),)),
        (ARGUMENTS,),
    ),
    Mutant(
        "freeze-blocks-unchecked",
        "freeze drops the given check of num_blocks (more blocks than the model has freeze them all)",
        Edit(F, "freeze", patch=(("not 0 <= num_blocks <= len(model.blocks)", "num_blocks < 0"),)),
        (ARGUMENTS,),
    ),
]
