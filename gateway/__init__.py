"""OpenAI-compatible gateway in front of vLLM, with the audience API (quiz, survey) on S3 records."""
