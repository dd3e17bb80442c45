"""The fine-tuned model as a product: export a run's model, evaluate any model, generate from it.

    run_source.py  a run directory's config and last checkpoint; which model (average / client:N)
    assemble.py    x0 + trained tensors → the run's model, or plain transformers weights (LoRA merged)
    atomic.py      directories that appear complete or not at all
    export.py      the Hugging Face directory (weights, tokenizer, generation config, peft adapter)
    evaluation.py  held-out metrics of a run or model directory
    generation.py  text from a model directory
    command.py     ``deca-ray export | eval | generate``
"""
