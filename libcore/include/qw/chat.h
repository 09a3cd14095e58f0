/* qw/chat.h — the Qwen3 chat template, rendered in C. */
#ifndef QW_CHAT_H
#define QW_CHAT_H

/* The Jinja source of Qwen3's chat template, exactly as shipped in its
 * tokenizer_config.json (written into tokenizer_config.json by training). */
extern const char qw_chat_qwen3_template[];

#endif
