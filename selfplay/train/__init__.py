"""The train stage: DPO + NLL on a round's pairs (dpo.train_dpo, which takes the run's [train]
section). data: pairs read, filtered and ordered; trainer: TRL's DPOConfig, the lr schedule and
the progress log; head: the completion-only LM head; precision: fp32 / bf16; dist: ranks of a
distributed launch; launch: train.launcher (in this process or `accelerate launch`)."""
