/* edgec test firmware: runs the model once on the embedded test input and prints its output
 * and the instructions it took through semihosting. Under qemu -icount shift=0 one instruction
 * is one nanosecond of virtual time, and SysTick counts the 25 MHz MPS2 system clock, so one
 * SysTick tick is EDGEC_INSNS_PER_TICK instructions. */
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "test_input.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define RELOAD 0xFFFFFFu

static volatile uint32_t wraps;
static uint64_t layer_ticks[EDGEC_LAYERS];
static uint64_t last;

void SysTick_Handler(void)
{
    wraps++;
}

static uint64_t ticks(void)
{
    uint32_t w, v;
    do {
        w = wraps;
        v = SYST_CVR;
    } while (w != wraps);
    return (uint64_t)w * (RELOAD + 1u) + (RELOAD - v);
}

void edgec_layer_done(int layer)
{
    uint64_t t = ticks();
    layer_ticks[layer] += t - last;
    last = t;
}

int main(void)
{
    static int8_t output[EDGEC_OUTPUT_SIZE];
    SYST_RVR = RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7; /* processor clock, interrupt on wrap, enabled */
    while (SYST_CVR == 0) {
        /* the first tick loads RELOAD into the counter */
    }
    uint64_t start = ticks();
    last = start;
    edgec_model_run(edgec_test_input, output);
    uint64_t total = ticks() - start;
    printf("EDGEC-OUTPUT");
    for (int i = 0; i < EDGEC_OUTPUT_SIZE; i++) {
        printf(" %d", output[i]);
    }
    printf("\nEDGEC-TICKS %lu\nEDGEC-LAYERS", (unsigned long)total);
    for (int i = 0; i < EDGEC_LAYERS; i++) {
        printf(" %lu", (unsigned long)layer_ticks[i]);
    }
    printf("\n");
    return 0;
}
