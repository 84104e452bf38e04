"""`specialize eval`: HumanEval, MBPP, GSM8K and MATH as the Qwen report measures Code-Qwen-Chat and Math-Qwen-Chat."""
