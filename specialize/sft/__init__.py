"""ChatML supervised fine-tuning: chat data -> loss-masked packed samples -> the shared training runtime."""
